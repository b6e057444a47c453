{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "OywH3EHKYKl8Hl/B1tengvFxWsuQz/hOXQwyYybJuLBATrf2v58DbVFXLYyzWAb7SkvMPy/G3lQ+QP1X6bEBAg=="
}
