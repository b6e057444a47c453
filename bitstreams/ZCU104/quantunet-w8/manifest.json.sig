{
 "alg": "ed25519",
 "key_id": "da58b89a63d33ae8",
 "signature": "ly/qR+F+stWe/1kiEFnsOvkLHwiBFGXi2GKZAuyCvrgVRnLV6XmXj3WNeJfT8BK/hf5Od1bcENDlelBwXquUBA=="
}
