#!/bin/bash
# callgrind instruction count of a broker over a fixed produce: binary tag
bin=$1; tag=$2; port=19600; d=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file=/tmp/cg/$tag.out "$bin" --data-dir $d/d --listen 127.0.0.1:$port --log-level warn --shards 1 --fsync never $EXTRA > /tmp/cg/$tag.log 2>&1 &
pid=$!
for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
/work/main/target/release/ringtail-bench produce --brokers 127.0.0.1:$port --topic cg --partitions 4 --connections 2 --messages 1000000 --acks 1 --json /tmp/cg/$tag.json > /dev/null 2>&1
echo "bench rc=$?"
kill -TERM $pid; wait $pid
rm -rf $d
