{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "KFTm0w+JKlaAG4SeMZLrWS+cnuZsCjaNbjo4W2PiItqHEDFqaPrPCtesonMpgqoRMIMg5GFizZM7tLkFVfi3BQ=="
}
