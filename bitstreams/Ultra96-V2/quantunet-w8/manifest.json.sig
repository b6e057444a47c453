{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "XkPXEABTaLSZNS3VPEh0wVidqlaZ0fKP0+fryA2lEqKEw3mJecTjCp6sdySJde9e+aHcmlpJzWQum1H+HWBgCg=="
}
