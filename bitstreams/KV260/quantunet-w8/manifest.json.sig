{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "FaQ8weLgR9aEHrkXwU0Rn0ct//8HhcbGKQ/Et48cjB7AP6/eXk0CF8EhqtHOUfIw5OjTk/nQgiQB8fSfnEVZBg=="
}
