#!/bin/sh
# busybox httpd's /cgi-bin/whoami: the caller's address, as the server sees it
# (the test image's pods and the outside host both serve it).
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$REMOTE_ADDR"
