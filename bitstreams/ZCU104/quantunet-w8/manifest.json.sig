{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "2/79wBTl5iUpuhj5aLtlHRqzKhwzv8auNHUNqKuTQnn6Y3WBg+c2L8OSZjcil7xcLBXLP/oC6QyVH1aN9+6JAw=="
}
