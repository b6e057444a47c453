{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "O4PCjlxDWOuf5ekveoUJImXI2givxONYfbk3NzhW88qnoxTndFwedORZPE1AYbktC8O8r2b0UuG10PiguYSBDQ=="
}
