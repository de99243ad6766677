/*
 * A code-only ELF file for the map-unmap-replace test of
 * crates/nflame/tests/hostile.rs: built twice, with two names of the same
 * length for its one function, so both builds have the function at the same
 * file offset: FNAME=guest_only_symbol (the container's file) and
 * FNAME=hostx_only_symbol (a file only the host has).
 * Build: gcc -O2 -shared -fPIC -nostdlib -DFNAME=... -o lib.elf lib.c
 */
#include <stdint.h>

uint64_t FNAME(uint64_t n)
{
	volatile uint64_t x = n;
	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	return x;
}
