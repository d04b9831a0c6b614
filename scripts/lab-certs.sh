#!/usr/bin/env bash
# lab-certs.sh DIR [--test]: a lab certificate authority and the certificates of the demo's TLS
# connections (docs/switchd.md "TLS"), made with the openssl command into DIR (./run.sh: var/tls,
# never committed). Idempotent: a file that exists and still verifies against the CA for a day
# more is kept; anything missing, unreadable or about to expire is made again (with everything
# it signed, when it is the CA).
#
#   ca.crt ca.key              the lab CA (RSA 2048, 10 years)
#   switchd.crt/.key           switchd's terminal listener (SAN IP:127.0.0.1, DNS:localhost)
#   terminal.crt/.key          a terminal host of acquirer 100001 (CN=TERMHOST1, OU=100001)
#   issuer.crt/.key            issuer-sim (SAN IP:127.0.0.1, DNS:localhost)
#   hsm.crt/.key               hsm-sim (SAN IP:127.0.0.1, DNS:localhost)
# With --test, also what the TLS tests refuse:
#   other-ca.crt/.key, other-terminal.crt/.key   a terminal signed by another CA
#   expired.crt/.key           a terminal certificate of the lab CA that expired in 2020
#   acq2.crt/.key              a terminal of another acquirer (OU=200002)
#   switchd2.crt/.key          a second switchd certificate (CN=switchd-renewed), for reloads
#   wrongname.crt/.key         a server certificate of the lab CA for another host (SAN
#                              DNS:elsewhere.example only): a client dialling 127.0.0.1 refuses it
# Keys are 0600. No key ever leaves DIR; nothing here is a production certificate.
set -euo pipefail

dir=${1:?usage: lab-certs.sh DIR [--test]}
test_set=${2:-}
mkdir -p "$dir"
cd "$dir"
umask 077

valid() { # cert: exists, signed by our CA, valid for one more day
  [ -s "$1.crt" ] && [ -s "$1.key" ] &&
    openssl verify -CAfile "${2:-ca}.crt" "$1.crt" >/dev/null 2>&1 &&
    openssl x509 -in "$1.crt" -noout -checkend 86400 >/dev/null 2>&1
}

make_ca() { # name subject signed... (made again under a new CA)
  if [ -s "$1.crt" ] && [ -s "$1.key" ] &&
    openssl x509 -in "$1.crt" -noout -checkend 86400 >/dev/null 2>&1; then
    return 0
  fi
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 3650 \
    -subj "$2" -addext "basicConstraints=critical,CA:true" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  local n
  for n in "${@:3}"; do rm -f "$n.crt"; done
}

sign() { # name subject ext ca [days]
  local name=$1 subj=$2 ext=$3 ca=${4:-ca} days=${5:-825}
  valid "$name" "$ca" && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
  printf '%s\n' "$ext" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
    -out "$name.crt" -days "$days" -sha256 -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

server_ext='basicConstraints=CA:false
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost'
client_ext='basicConstraints=CA:false
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

make_ca ca "/O=Atlas lab/CN=Atlas lab CA" switchd terminal issuer hsm acq2 switchd2 expired wrongname
sign switchd "/O=Atlas lab/CN=switchd" "$server_ext"
sign terminal "/O=Atlas lab/OU=100001/CN=TERMHOST1" "$client_ext"
sign issuer "/O=Atlas lab/CN=issuer-sim" "$server_ext"
sign hsm "/O=Atlas lab/CN=hsm-sim" "$server_ext"

if [ "$test_set" = "--test" ]; then
  make_ca other-ca "/O=Elsewhere/CN=Another CA" other-terminal
  sign other-terminal "/O=Elsewhere/OU=100001/CN=TERMHOST9" "$client_ext" other-ca
  sign acq2 "/O=Atlas lab/OU=200002/CN=TERMHOST2" "$client_ext"
  sign switchd2 "/O=Atlas lab/CN=switchd-renewed" "$server_ext"
  sign wrongname "/O=Atlas lab/CN=elsewhere.example" "basicConstraints=CA:false
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:elsewhere.example"
  if [ ! -s expired.crt ]; then
    # openssl x509 cannot back-date: openssl ca can (-startdate/-enddate).
    rm -rf expired.db && mkdir expired.db && : >expired.db/index.txt && echo 01 >expired.db/serial
    cat >expired.db/ca.cnf <<CNF
[ca]
default_ca = lab
[lab]
dir = expired.db
database = expired.db/index.txt
new_certs_dir = expired.db
serial = expired.db/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
organizationalUnitName = optional
organizationName = optional
CNF
    openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr \
      -subj "/O=Atlas lab/OU=100001/CN=TERMHOST-OLD" 2>/dev/null
    openssl ca -batch -config expired.db/ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr \
      -out expired.crt -startdate 20200101000000Z -enddate 20200201000000Z -notext 2>/dev/null
    rm -rf expired.csr expired.db
  fi
fi
chmod 600 ./*.key
