{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "h9Piq7y9uD+z96mSJ4sHHqfDHF0vxvRwiBslxNbg67miNBW06PeeeTW5qe7Ml0od8obN/F7HvqVnVv1XMY2KCA=="
}
