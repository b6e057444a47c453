{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "sSQxzbNlqsFVHh68+OfJpvj0cjQBUQcZ0i0KpKBYHxFi1Fc1JK2vUfv4c5NXPikdgn7rXYqG4hfIp2T6zi/ABA=="
}
