{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "a+FV5MJySbdeCvhdR2qBId1c4b+czv8oTln95XjgOxiwp7JoPGRZWAx7sDWFw01qvEy11OkA67YQaj9vfxK8DQ=="
}
