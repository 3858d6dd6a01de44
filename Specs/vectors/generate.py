#!/usr/bin/env python3
"""Generates Specs/vectors/conformance.json, the Stagepass verifier conformance vectors.

Every port of the verifier (Swift library, C ABI, CLI, any future port) must give the
`expected` verdict for every case. The rules are in Specs/token-profile.md; this script
only builds tokens that exercise them.

Run from anywhere:  python3 Specs/vectors/generate.py            (rewrites conformance.json)
                    python3 Specs/vectors/generate.py --check    (exit 1 if the file is stale)

Needs Python 3.10+ and `cryptography` (>= 44, for RFC 6979 deterministic ECDSA); `joserfc`
is used to cross-check the RFC 7638 thumbprints. The keys below are fixed TEST keys,
published on purpose: never use them for anything else. ES256 signatures use RFC 6979
deterministic nonces and PS256 signatures use a salt derived from the message, so re-running
the script reproduces conformance.json byte for byte.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import zlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "conformance.json")

# ---------------------------------------------------------------------------------------------
# Fixed test keys (PKCS#8, unencrypted). Generated once with `cryptography`; do not regenerate.
# ---------------------------------------------------------------------------------------------

EC_MAIN_PEM = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgW5M/Ek+OqBQ7EQh5
tdEOTHHACkwEcOilbjnxe2kt/dChRANCAATQ4Ms6U/hh8U3CYVP46ztrKOE/SinD
NSbvJrnmwstQ0qNoiZLSfk9dlUyRSfpppukB9PjIUrp7+UTBU0+1gYK4
-----END PRIVATE KEY-----
"""

EC_OTHER_PEM = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTp5FukoMEcgKU6r6
AWgZWoYR/W3aq8CDzprcR6c/gZ6hRANCAATGwCQPKmV37p9q5fBXt/bONgEptNNQ
1wCwJSmI4frZ3rjHxoS2dMb1QJn/JZL8HvhGWwzE9wgpxtD+gQXd79IT
-----END PRIVATE KEY-----
"""

ED_MAIN_PEM = """\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJgVBpVq4mE3QvqoVWtzmqqlGq99DGhJ5k5SfPd9JnbB
-----END PRIVATE KEY-----
"""

RSA_RS_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDV2D6C46d0ledq
ki9KVqre7UPI8qGf9gFv8BuCe8Oo4xpKiTp4IIr8/VAG9K/gFzulojyCzXTa+7Rr
QrkKBftTSgmhwG35WTYqwXE5VSQODTGuITRPqPbStWkCHEmLCN1KTop88gHoeg0T
ALJtV9LfQTKBjaTHcALRbsf1BCWithkh5M2MPNA+q6dXA+dX6ISlh+iLOpuO4/L2
2ST9KbkHlc+h3vM7vcp8L19mNSxAvWokeFccioRb+k4/7E0r5Xy8zf8B1VhM6nk5
Td0vWAVUfF1QNgOhx1QbkIwH1AKqQVcWewIQaHNwTHwame4grh4nivx6Xwo8S5Ta
o/NEMmKJAgMBAAECgf9slamsbeikRFkCCH7/AGpLq31KVI7zC7ezPkte5/l0RnHj
taW2wRGgu61IPgN7uA5Rkuy/yNoXuw6RcLUl7CGXTG5qNhA2UTVwEPdKI2tKZLcu
FU8+2ZdzKQmrQGusPCi2b3m1b+uD/X3sPvzOtlP8T4P49nWi6Gj5iF3TBhyzHF3w
aLwsqigeYeL2Pfh0v1BMcS5P9ZAlOjshHvzVSvs0JF8e9+JUzESkwcgP1GYka6bw
ncM1BuOIYyjl5Rmakx9pUk3H01qpq3q24xoqpEZnQ5BdDdMqHiMO9Lw7sBRHOWik
GvER1/GXHOSLAu0QhAWaCqmurcOSEZ5w2OthtdUCgYEA/xLQ3bWWxv3og14i5OqE
ef0/23KwpeVleP/pNohXTgFQAUralA4i9hGB2E304f+6DLTGgTHAxXyc/FhfsUXk
ylLn/Y1KDZprnwz6w1SGdccc8bDYTEnTp9Zlck3F5J2KatAHwnGKCr9YOxY5+XWr
9fcJ2eOuP7/hklOU5YEnCTUCgYEA1p8XT2z6OZRRu8rCPIe08+dKE6Vz7DZ2EHEC
yoKws3PebPVTS3NZU+eSNysvjFynVl+ua10v3iM5VWiDexK3LacS/PNDy9b+EnLA
86oOrZdlnX6r2XC+z90ubdR5qGZr2KwZMbaC1uILdYRxxctAj7r6//g/Tz5wVr7/
alCtcoUCgYEA0jezo8WQqheAlSP0Ji2RWOh6xGVVaKQSaRKgJa1gJo22XhpO4k50
SdBL7vTwqYGU1/v0zW0vrpLw3pgG5Zbw5D5HrBPRwDxQDhkoYes7lb2wARD6coU1
xtFPclDek3ezKCyi+IGSfyELmkbLKOjt/BzJJaYbaba+NVZlFHDItzECgYBxSEfl
hIAPJFp/5OXhTUAV/V78P7iQVa67vuraOWFLVz1wBY2RpbDguLpUpFbUn5Mz5A0M
XoOFnNIGYsQDkj1du3IqUbzXOwOgeTGfa4OT3PWly9apTvlofjajgiM039rM4wnp
U4x8H5Qs01u6Ky5Ir0kNEttX2H0zTF1EoJDsgQKBgE5s3GttL5uo3C/PLDkHgwHA
ViBUGzYaDT18J0DzzBxW1qfghwxBqG2uoudv5If+jC2Cu1eiliSrne9T8y8R1xo4
EpvCPqNdY1aPlBRT4olFbbIbDDnRjzZ+8CRPXSE8X44NdkSvdrPG6fXrrstHsotd
x4LJQ60K01SE1pToQud5
-----END PRIVATE KEY-----
"""

RSA_PS_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDPM4ZaasQIoRNR
Dt3Cv44dr1eN2EY+UAcJqyuHD7ocTTDT2AbFnG6InX8GfSXsBWLhcDWKtKKx8uT5
o6s8yTZy5ZTx7HINtURcz68CFY7jWqCdF53dK34smTkDuA8VF4iydmCxMEe5iqjS
nSw4eajBcE+azORoruHoyR7pUPkWZHxUXrs9fkKdq51MnHuNBeo6C5nT8Nsv31kH
p5Hqa2Mf2yagcyBVKCkmlH+/JW844jWJBn/uQxLk4Tss6AUQkyKovI59x45GxJsD
X0Z0Eqm0zHk3sn2NW7LwWTCNDy8RUFalZFTFyIkqqthk0enf9HMzxLfl3Bm0xUSm
QtawPK0dAgMBAAECggEAMyB8ZDaokRWH4e44Z6vjKi2APfKyIIGYPvlC6BSIIKAm
bnuFbkDzoFe2hpgeYZ8Rn12UBJoedCjiebv6Tqk6u36tckWc/gduqzUe8rV1mOGd
tK2laTPociJLyIBkDlkMhLbDlK08YYrWrgOU7AmPC85GAkVRDgirG0j3TOyLTgwD
XT5QWw2IrMs6NjjR7fxGrQqmtZ4rK37wMg9Y0TKBvYOK1ZAd70U9od1aRTqGy7PK
WvAC/h+HfDmS8gUrcitHebwwpdpIeFmRaXo0fkQ3X1Diy31YKtWoNslNmBbvywu/
gsm19keSlrmBeT27aPUrhi/1rcPpnchI53YH4x02QQKBgQDnh318VOx1G89c9A0V
GkzR7u4OWoX0eXikj9xjc5xUm9owvWIV+D222I8+8LoE2pNeWC8Ls3juwfFERqqW
yZfKW8FwTjHR4fXZcnajwIBQ4lEgVZqtbsWMW8fpoSa5bUTvBWNMTVRi1ZtPD5GL
z0fdVyva3nZzHDh4RLHwiGj1XQKBgQDlGcoy5i5N1ygvv5bDUTflKN1hK7cW06+f
F765i/kdk/36lUGTt/dqz7BcD7I4pRnTu26xQh9uOTO9hR8gravOUTyaVyF4nPVC
g2AuNnOU/2OYfAPtYynRQy2nOnuJBYpWWW6MhnibrfWtlMKplvm2UhFtWDwBombx
zPk0f61awQKBgH2vvr5U97wnKa2jSsrO6S75zr96AsgRfR2Qfyp54z7HEG5vEKUu
iooNC842LjVeVqvboUZv2lF6dTgESKzsqPsQTnVh7Yera6PskF0ark26XiH4dqx5
usIUPPUmJ3h3yfkbaqlMPWgd317O68sC7ldI8CSzqYeZpUocuKAD3T59AoGBAMU0
nu2TX9ZXV1tKot774Y5bz7weIhr/GtRqXx1elJBWXLA/nFQobkw9/MQyKqpBy+qL
E6x3i5CYoqYHmhTKCfKt0OnWCJTHHwMjDT6aVoGyGKwgTE0iJ9Pe7MRfPgljgIH1
t4g1FEqFws2pGKtcrxS2rhOeeQC7J7wKQZVkNffBAoGBAOURPWoNmb9dNwg9uFrK
zOIoMGBJtK0mMXsrQwmj7/XU++9/KhITxdCFJD4eWJAvqvLIZ+NmABhVFVbiENCL
11iGbBrTE4MfMOUnjxGWJfKe+ZvWeTDci17asQL9l5LrLaVS4R9bn53VfykUbaIl
9KBhCA/iU6BpNzUtyIz2Y/xz
-----END PRIVATE KEY-----
"""

RSA_1024_PEM = """\
-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAK6BI6psRPKPd4xr
1T3KSYVGA3wFbe45r3z9WlKJQEHkl9WZevb43u7Y0vEJWGz7P6aTwizF51o434e3
Z+t71G1C731m4MiHl9vZXNp6CAVYxKDhwvqIv9PkfuweMukeOQkA1jtgr4oJh021
R+9ni1eCxI0olHy7gbkuAUYNTcW5AgMBAAECgYBZQt9uhlFCTdaV8nayU64FyQlx
QAm6SLGWWrX/8Ar5aaes8AQxHp5SSICmIOSlYmNtnrk9U8ICqYLVliBHGSFQJUEk
j/487qpAwAa4bIin/o2HZFtLhz897PmzUklAl9N7tXbBMj9rqatuqhshTcOvMPxf
DhnyaD5KMq+5lOYxLQJBAOedgxb171TcOtuNP3VUFW8BZUiKyrFHUZK4bvBmyEcp
MKgUfO7NaSDggcgkFX/rYJx6yOqgNHIKVH8UCjw8xNMCQQDA4GC9ev8ZXtte5/R+
bcim7G6yDlEKj52t9X9PQaAIqSMX+PGIiUcqzmWtLYnxe9YWfFnK5POyCyg5lYae
mSPDAkEAwZhj6T46BQlr3PXsU+qrW7Sj7wWrtJBzO5sTh7exseFY/TTa1FQ3ijZ9
5Edc/SZGA6WR6KNuEuBVjj6263Cz5wJAbyYeubLSpUUzt/qFvAH6Gq+vju6PJz3i
CSirZ/oShksqDRuJ3Tv3BiURFP5kOwQ5OJYKjNDp2tVxJdYUUPtBTwJBAJ7GNI9c
vY0qHLqYXHOx2Pva2Oi/gCbobFSwqFGmChpoI/oXOZxf2lYjnfPbnax4/Xm3tQeI
BHQcTBFK/XVeR8w=
-----END PRIVATE KEY-----
"""

