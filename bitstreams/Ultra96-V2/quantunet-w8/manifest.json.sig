{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "/vRpl3rHGkWbM9gzKXNaMsQOVizo3y/4X87ZR65AoIsnEamrwv9W10aaWfpq5+QAnZumdgGSlDLPgfOFW04JAQ=="
}
