{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "uiwCMVEyKET2oW3Bg6xnu+SABepWY7Lc0mL/BW5rVFuweSKzt1WBlO7LZMGKfgu6emiRlzjoGnjah9NwjQZ/DA=="
}
