{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "cDEOBG3D1450stV2MqvDKPP+UTmDeokpY298ijpaDTKdlMF8ZTqeAM/g5TDGwi1bUGGfSHLtUwkYulCrQmDLDA=="
}
