{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "3RRu4b6Du+kIvSAyE/Q9h3JBxefL4fhRKSGgBzEoce5nZ8gZaoTaudeoqUFRLGuwknM8AKjNqZd7/g7nqGJlBQ=="
}
