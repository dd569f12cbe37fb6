package main

import (
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"math/big"
	"math/rand/v2"
)

// Since Go 1.26 rsa.GenerateKey ignores its random source, so a corpus
// signed with it could not be regenerated: the standalone DNS server
// (milterbench dns) and the load generator (milterbench run) are separate
// processes that must agree on the keys. These keys come from a seeded
// generator instead. They are test keys only.

// deterministicRSA returns an RSA key of the given size drawn from rng.
func deterministicRSA(rng *rand.Rand, bits int) (*rsa.PrivateKey, error) {
	e := big.NewInt(65537)
	one := big.NewInt(1)
	for range 64 {
		p := deterministicPrime(rng, bits/2, e)
		q := deterministicPrime(rng, bits-bits/2, e)
		if p.Cmp(q) == 0 {
			continue
		}
		n := new(big.Int).Mul(p, q)
		if n.BitLen() != bits {
			continue
		}
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(e, phi)
		if d == nil {
			continue
		}
		k := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: n, E: int(e.Int64())},
			D:         d,
			Primes:    []*big.Int{p, q},
		}
		k.Precompute()
		if k.Validate() == nil {
			return k, nil
		}
	}
	return nil, errors.New("keys: no RSA key found")
}

// deterministicPrime returns a prime of exactly bits bits (top two bits set,
// so that the product of two has the full size) with gcd(p-1, e) = 1.
func deterministicPrime(rng *rand.Rand, bits int, e *big.Int) *big.Int {
	buf := make([]byte, (bits+7)/8)
	two := big.NewInt(2)
	for {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		buf[0] |= 0xC0
		buf[len(buf)-1] |= 1
		p := new(big.Int).SetBytes(buf)
		for range 4096 {
			if p.ProbablyPrime(20) && new(big.Int).Mod(new(big.Int).Sub(p, big.NewInt(1)), e).Sign() != 0 {
				return p
			}
			p.Add(p, two)
		}
	}
}

// deterministicEd25519 returns an Ed25519 key whose seed is drawn from rng.
func deterministicEd25519(rng *rand.Rand) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	return ed25519.NewKeyFromSeed(seed)
}
