package confine

const x32SyscallBitForTest = 0
