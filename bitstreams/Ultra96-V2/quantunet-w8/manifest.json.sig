{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "M/S253sVUPPzAZBvIb5rtQ4eecnD8qBeZm5UYWXtrYbQyZPIJ0zFLI2WlrCs9ksed7hFs7gKHc/pssZrq805Cg=="
}
