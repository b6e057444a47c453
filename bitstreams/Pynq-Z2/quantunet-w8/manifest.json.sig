{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "1pAE5I1zmBXdQvgSsQVXItUNpt4SPI5vbL0VCnJWKLORSVL7JLvT+6prHA+yGGUY8W2gXCDYW9Mn40n+ilZXBg=="
}
