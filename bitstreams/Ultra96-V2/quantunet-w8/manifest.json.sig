{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "GInMWvyybXAdOrz1xx2mEem8mZQNgMkAMuURermvUy0bC0ClUDMhuhLfKijaQSw+mUtrCr562j+f3SaV9vskCw=="
}
