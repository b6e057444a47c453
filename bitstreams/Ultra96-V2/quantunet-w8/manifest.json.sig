{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "bC1xxvQ4wdr0xXYDkSBPwr6rzxay0y9Z677U32ZEzg+Q7M6jxUgb7Fb/Xgur7pgF+f3AFx4SMLdIdBYd28X0BQ=="
}
