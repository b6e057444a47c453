{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "33RMozlWzjm5jYrbwrt8saMDDcjm81I7JCo4HedS2RDsow93xVYghGnnsJVJRIcMMxlok8hRfw7oAUmUIoabBg=="
}
