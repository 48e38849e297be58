"""A tiny protected API that verifies Clerk session tokens with the official
Python SDK (clerk-backend-api), so tests can compare authwatch's verdict with
what the real SDK decides.

Configured only from the environment:
  CLERK_SECRET_KEY  sk_... sent as the bearer to GET {CLERK_API_URL}/v1/jwks
  CLERK_API_URL     base of the Backend API, without /v1 (default https://api.clerk.com)
  PORT              where uvicorn listens on 127.0.0.1 (default 8000)
To trust a test CA, set SSL_CERT_FILE: httpx reads it (and it then replaces the
default bundle). HTTPS_PROXY is NOT honoured by the SDK's JWKS fetch.

Run: PORT=8020 CLERK_SECRET_KEY=sk_test_x CLERK_API_URL=https://localhost:8443 \
     SSL_CERT_FILE=ca.pem python python_api.py
"""

import os
import time

import httpx
import uvicorn
from clerk_backend_api.security import (
    AuthErrorReason,
    TokenVerificationError,
    VerifyTokenOptions,
    verify_token,
)
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRET_KEY = os.environ.get("CLERK_SECRET_KEY")
# authenticate_request()/AuthenticateRequestOptions have no api_url and always
# fetch https://api.clerk.com/v1/jwks, so the only SDK path that can be pointed
# at a fake Backend API is verify_token() with VerifyTokenOptions.api_url.
# The SDK appends "/{api_version}/jwks" verbatim, so a trailing "/" would give "//v1".
API_URL = os.environ.get("CLERK_API_URL", "https://api.clerk.com").rstrip("/")

app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok"}


# The seed API's /health/network, slow on purpose when SLOW_SECONDS is set: uvicorn stamps
# the Date header when the request arrives, so a slow answer carries an old Date.
@app.get("/health/network")
def health_network():
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
    return {"status": "ok", "checks": {"clerk_jwks": {"status": "ok"}}}


# A plain `def` route, as in Clerk's examples: the SDK call is synchronous and
# can block for minutes while the JWKS is unreachable, so it runs in the
# threadpool and /health stays responsive.
@app.get("/me")
def me(request: Request):
    # Same token extraction as the SDK's authenticate_request(): the
    # Authorization header with "Bearer " stripped (no cookie fallback needed here).
    header = request.headers.get("authorization")
    if header is None:
        return _denied(AuthErrorReason.SESSION_TOKEN_MISSING.value[0], AuthErrorReason.SESSION_TOKEN_MISSING.value[1])
    token = header.replace("Bearer ", "")
    try:
        # Default options, as a typical app: 5 s clock skew, no audience, no
        # authorized_parties (so azp is not checked), issuer never checked.
        claims = verify_token(token, VerifyTokenOptions(secret_key=SECRET_KEY, api_url=API_URL))
    except TokenVerificationError as e:
        return _denied(e.reason.value[0], e.reason.value[1])
    except httpx.HTTPError as e:
        # The SDK lets transport errors (refused connection, TLS failure after
        # its 10 retries) escape as httpx exceptions; a real app turns that into
        # a 500, which is what we answer too, but with the cause named.
        return JSONResponse(status_code=500, content={"error": "sdk-exception", "exception": type(e).__name__, "message": str(e)})
    return {"sub": claims.get("sub"), "sid": claims.get("sid")}


def _denied(reason: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=401, content={"reason": reason, "message": message})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="warning")
