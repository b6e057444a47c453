{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "2x/n8DIexCs77qf9uGMMb6yChlxPLJQx2yuLDWzQNc/SVvD6kBGuHqhMr8zoVE8rD/dMo+gxEb30edDYbH+ZDg=="
}
