{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "ISMTr9TLYGQStLJwvc6397JXasFvYhtK4/OqYbwrflPpmsJbJvMhQNoYhPkKeU6UXyoBR2xvQ4ENbmW8VebjAQ=="
}
