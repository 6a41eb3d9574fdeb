package xts

import (
	"crypto/aes"
	"crypto/cipher"
)

func aesNew(key []byte) (cipher.Block, error) { return aes.NewCipher(key) }
