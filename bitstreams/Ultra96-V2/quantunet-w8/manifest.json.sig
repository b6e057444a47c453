{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "16issoSBKtrsBVmamnPl0NHMNGRJYOOyRdn38m6t7CLatABgX1oJz7RXfwPGAu3WIjxtlvdECzrP27QReP4dCA=="
}
