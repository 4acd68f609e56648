#!/bin/sh
# Side-by-side: rtpengine (user space, no kernel module) under the same rtpblast load.
# usage: rtpenginebench.sh CALLS [PPS] [SECONDS]   (starts its own rtpengine on ng 127.0.0.1:2299)
set -e
N=${1:-500}; PPS=${2:-50}; S=${3:-10}
PEERS=${PEERS:-/work/shared/peers/kamailio-rtpengine}
rtpengine --config-file=none --interface=127.0.0.1 --listen-ng=127.0.0.1:2299 --port-min=14000 --port-max=19999 \
  --foreground --log-stderr --log-level=3 --table=-1 --num-threads=2 --delete-delay=0 > /tmp/rtpenginebench.log 2>&1 &
RP=$!
sleep 1
python3 "$PEERS/ngcalls.py" --ng 127.0.0.1:2299 --calls "$N" --base-a 10000 --base-b 12000 > /tmp/rtpenginebench-calls.txt
RSS=$(awk '/VmRSS/ {print $2}' /proc/$RP/status)
T0=$(awk '{print $14+$15}' /proc/$RP/stat)
/tmp/rtpblast --pps "$PPS" --seconds "$S" < /tmp/rtpenginebench-calls.txt | tee /tmp/rtpenginebench-blast.txt
T1=$(awk '{print $14+$15}' /proc/$RP/stat)
RECV=$(grep -oE 'received=[0-9]+' /tmp/rtpenginebench-blast.txt | cut -d= -f2)
echo "rtpengine: calls=$N cpu_ticks=$((T1 - T0)) relayed=$RECV cpu_per_packet_us=$(python3 -c "print(round(($T1-$T0)*1e4/$RECV, 2))") rss_kib_after_calls=$RSS"
kill $RP
wait $RP 2>/dev/null || true
