package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process figures from /proc (Linux only).

// clockTick is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is
// 100 on every Linux ABI Go supports.
const clockTick = 100

// procCPU returns the user+system CPU time of a process (all its threads,
// including the ones that exited).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields count from ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// procMem returns VmHWM (peak RSS) and VmRSS in bytes.
func procMem(pid int) (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmHWM":
			hwm = kb << 10
		case "VmRSS":
			rss = kb << 10
		}
	}
	return hwm, rss, sc.Err()
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux ≥ 4.0; needs the
// right to write the process's clear_refs). It is best effort.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// selfCPU is the CPU time of this process (generator and DNS server).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU returns busy and total jiffies of all CPUs (/proc/stat).
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, s := range f[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// pidOfMilter finds the process listening on a milter address: the owner
// of the listening socket's inode (/proc/net/unix or /proc/net/tcp*).
func pidOfMilter(addr string) (int, error) {
	network, address, err := splitMilterAddr(addr)
	if err != nil {
		return 0, err
	}
	var inode string
	if network == "unix" {
		inode, err = unixInode(address)
	} else {
		inode, err = tcpInode(address)
	}
	if err != nil {
		return 0, err
	}
	return socketOwner(inode)
}

func unixInode(path string) (string, error) {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// Num RefCount Protocol Flags Type St Inode Path; flags 00010000 = listening.
		if len(f) >= 8 && f[7] == path && f[3] == "00010000" {
			return f[6], nil
		}
	}
	return "", fmt.Errorf("no listening unix socket %s", path)
}

func tcpInode(hostport string) (string, error) {
	_, port, ok := strings.Cut(hostport, ":")
	for ok && strings.Contains(port, ":") {
		_, port, ok = strings.Cut(port, ":")
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("bad address %s", hostport)
	}
	want := fmt.Sprintf(":%04X", p)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 10 && strings.HasSuffix(f[1], want) && f[3] == "0A" { // TCP_LISTEN
				return f[9], nil
			}
		}
	}
	return "", fmt.Errorf("no listening socket on %s", hostport)
}

func socketOwner(inode string) (int, error) {
	target := "socket:[" + inode + "]"
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == target {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process owns socket inode %s", inode)
}
