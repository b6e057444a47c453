{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "tzXPs+ZQopWsxe+uwP4uSKLfsRjKChI0IB6WuFQXYyfSQKf+RVoa67P5VeHaUp3SWWc4wvKNu+LmN6paQBejDA=="
}
