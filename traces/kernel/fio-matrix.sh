#!/bin/sh
# The fio matrix of traces/kernel/DIVERGENCES.md: 11 fio jobs on ext4, xfs and btrfs
# (NOCOW), each recorded and replayed with `dioconf record -- fio ...`; one line per
# recording. Usage: sh traces/kernel/fio-matrix.sh OUT_DIR   (root, fio installed)
set -u
OUT=${1:?usage: fio-matrix.sh OUT_DIR}; mkdir -p "$OUT"
for FS in ext4 xfs btrfs; do
 NOCOW=""; [ $FS = btrfs ] && NOCOW='chattr +C $DIOCONF_MNT/d && '
 while read -r NAME ARGS; do
  python3 -m dioconf record --fs $FS --out $OUT/$NAME --name $NAME -- sh -c "mkdir \$DIOCONF_MNT/d && $NOCOW fio --name=j --directory=\$DIOCONF_MNT/d --filename=f --size=2m --direct=1 $ARGS --verify_state_save=0 --output=/dev/null" > $OUT/$FS-$NAME.log 2>&1
  echo "$FS $NAME $(tail -1 $OUT/$FS-$NAME.log)"
 done <<'LIST'
psync-rw --ioengine=psync --rw=randrw --bs=4k --number_ios=400
pvsync2-512 --ioengine=pvsync2 --rw=randwrite --bs=512 --number_ios=400
libaio-qd32 --ioengine=libaio --iodepth=32 --rw=randrw --bs=4k --number_ios=600
libaio-1m --ioengine=libaio --iodepth=8 --rw=randrw --bsrange=4k-1m --number_ios=200
uring --ioengine=io_uring --iodepth=16 --rw=randrw --bs=4k --number_ios=600
uring-fixed-sqpoll --ioengine=io_uring --iodepth=16 --rw=randwrite --bs=4k --fixedbufs --sqthread_poll --number_ios=400
dsync-libaio --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --sync=dsync --number_ios=300
fallocate-native --ioengine=libaio --iodepth=8 --rw=randwrite --bs=8k --fallocate=native --number_ios=300
verify --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --verify=crc32c --number_ios=300
fsync4 --ioengine=psync --rw=randwrite --bs=4k --fsync=4 --number_ios=300
jobs3 --ioengine=psync --rw=randwrite --bs=4k --numjobs=3 --number_ios=200
LIST
done
