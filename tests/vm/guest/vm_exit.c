/* Ends the guest with a verdict: writes one byte to QEMU's isa-debug-exit port (0xf4), which
 * makes QEMU exit with status (byte << 1) | 1. Built static so it needs nothing in the initramfs.
 * usage: vm_exit BYTE */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: vm_exit BYTE\n");
    return 2;
  }
  const int value = atoi(argv[1]);
  if (ioperm(0xf4, 4, 1) != 0) {
    perror("vm_exit: ioperm(0xf4)");
    return 1;
  }
  outb((unsigned char)value, 0xf4);
  /* Only reached when the machine has no isa-debug-exit device. */
  fprintf(stderr, "vm_exit: no isa-debug-exit device at 0xf4\n");
  return 1;
}
