{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "u71zQkLi73uHWZX3yWDGsPtmMMOlNL+mA9m4d+XezXiCUXLejmehGh1/nwmMdL35VpbnvxNXME6Nar4vZfT1AA=="
}
