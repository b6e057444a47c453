{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "T2yTqQTQln9onMoIf8/VxkCQJb5a2cy5VWUCytnV7y6TAPLg6+DEp70c1Y0TvU7dHXyxrx3CUR9VlOLfZf90Bg=="
}
