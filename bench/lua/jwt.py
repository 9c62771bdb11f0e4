"""Mints HS256 access tokens the way libcommon's ias_jwt_issue does (sub, org,
role, typ=access, jti, iat, exp), for load scripts that need one token per
org without a login per org. Reads "org_id user_id role" lines on stdin,
writes "org_id user_id token" lines. The secret comes from IAS_JWT_SECRET."""
import base64, hashlib, hmac, json, os, sys, time, uuid


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


secret = os.environ["IAS_JWT_SECRET"].encode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
now = int(time.time())
for line in sys.stdin:
    org, user, role = line.split()
    claim_org = "" if org == "-" else org
    claims = {"sub": user, "org": claim_org, "role": role, "typ": "access",
              "jti": str(uuid.uuid4()), "iat": now, "exp": now + 3600}
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64(hmac.new(secret, (head + "." + body).encode(), hashlib.sha256).digest())
    print(org, user, head + "." + body + "." + sig)
