{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "wAgS55g9XR7YhMR6+UQz9wplAtvPESuyFHuxpEkU3aZiVNwewp2wKOprimN4axaVrB3qURdxwluep4DK6z9NCw=="
}
