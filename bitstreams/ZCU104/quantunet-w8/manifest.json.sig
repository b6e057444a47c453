{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "ts2f4UZC5tvH4LVgytVlmXiBz0K7Ilo7dgr0XT3j7SxX9Qf0FWWAi33/gAGP4ZCYrFle7ChcRESRAAzul5GFDg=="
}
