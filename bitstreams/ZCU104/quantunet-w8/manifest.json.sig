{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "129I13b3C6rcG5dyV43X9dcDVaArf0FUz+xB6m9+0kdKGRiK5zA5tIcIjnzA1GMEQ6ITgZUSi5rkCPczC05IBw=="
}
