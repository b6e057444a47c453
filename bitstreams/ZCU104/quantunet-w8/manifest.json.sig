{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "/eZiizp6loQl15AzbKVknMT7pNJMbpYc0GKBq0Bry41zmIBF8ZaaqF4y6TJgwW1xF9rE1vwi9D6QsJA4Q1iKAA=="
}
