{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "dSAlfaoYqFpgKhL8Acwcafi9saLrxLH+HXTs2H0pa/ZbLJVrOt9oTTzxDGDkLUoUUHUP0eAPfRGXQ/KCAUETBQ=="
}
