{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "6kDHm8EDSVJtrFHn+tG1bZ4tsdEm68E7+AQDM9bb+fspTt65ZqW5KP0q8dD+cx8hj5fRnN7IvcfDPdEvKuZaBw=="
}
