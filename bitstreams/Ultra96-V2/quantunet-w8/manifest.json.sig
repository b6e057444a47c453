{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "XAPgVsPtKYenIgNgZjAB1Qow/IGz1T1kD1YS5ynQv0e7zB53mzwlHM3xFtX4129QLwOZUdWTst1Fpw909a+GDg=="
}
