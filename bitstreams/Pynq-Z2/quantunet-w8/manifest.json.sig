{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "WEtCGwaEwA103FNvw7eJEufa5swq87QGqF6guHi3s0JPQr//UjUvTcSN2qvM7MPVe/pl30NyhKG7IIhx3VqEAw=="
}
