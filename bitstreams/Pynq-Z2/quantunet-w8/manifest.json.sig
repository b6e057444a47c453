{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "DBqhidrAAVYtMh/EzFwSdwB2kM+yoDXOxE0+HMDKR7IE+gAj/JfiyvCkh89yvNWWYEuw9HQmhIaEZqx0yAGZBg=="
}
