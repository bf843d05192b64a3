"""Container health check: GET /health on the backend in this container; exit 0 when it answers 200.

Sends HTTP Basic auth when BASIC_AUTH_USER and BASIC_AUTH_PASS are set, so it works whether or not the
backend protects /health.
"""

import base64
import os
import sys
import urllib.request

URL = "http://127.0.0.1:9090/health"


def main(url: str = URL) -> int:
    request = urllib.request.Request(url)
    user, password = os.environ.get("BASIC_AUTH_USER"), os.environ.get("BASIC_AUTH_PASS")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            return 0 if response.status == 200 else 1
    except Exception as error:  # any failure means unhealthy; say why in `docker inspect`
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
