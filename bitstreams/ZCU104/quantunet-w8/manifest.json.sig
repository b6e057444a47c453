{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "6DF/qZTFD21hRs68UIGJNWYfr2OZBU6VN+r/udmMQgsDIsO7BLuIoVij8E/N7WSoaLbOXRlWZ1LJTctf4MvfAQ=="
}
