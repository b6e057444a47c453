{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "MZeDLWCVs6CocTollv+3/zQBzZhNJn4iQQ8UwM2ScJxqDWwJT/LbtSkKAxYOPvYRhjymtH6fNSYJZJllrWydAQ=="
}
