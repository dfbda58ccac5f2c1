// A rough Coccinelle approximation of krefaudit's tail-ref-race rule, for
// bench/bench_scale.py only (it is not a rule of the analyzer).
//
// Reports a reference (get_page, page_cache_get, get_page_foll, get_huge_page_tail) on
// a page that came from a GUP call (get_user_pages*, pin_user_pages*,
// iov_iter_get_pages*, follow_page*) earlier in the same function, when some path from
// the GUP call to the reference calls no lock or IRQ-off primitive.
//
// What it does not do, unlike krefaudit: no provenance across functions, struct fields
// or stores into arrays (only `pages[i]`, `*pages` and one local copy `page = pages[i]`);
// no lock-set analysis (a lock taken before the GUP call, or taken and released again
// between the two calls, is not seen as it is there); no refcount model read from the
// tree's get_page(), so it reports on trees where tail references cannot race (4.5+).
//
//   spatch --sp-file bench/tail-ref-race.cocci --very-quiet --no-includes FILE...

// Pages from an array-filling GUP call, referenced through the array.
@arr exists@
identifier gup =~ "^(__)?(get|pin)_user_pages(_fast|_fast_only|_locked|_unlocked|_remote|_longterm)?$|^get_kernel_pages?$|^iov_iter_get_pages(_alloc)?2?$|^iov_iter_extract_pages$";
identifier ref =~ "^(get_page|page_cache_get|get_page_foll|get_huge_page_tail)$";
identifier lk =~ "^(spin_lock|spin_trylock|raw_spin_lock|pte_offset_map_lock|pte_alloc_map_lock|get_locked_pte|pmd_lock|pud_lock|huge_pte_lock|pmd_trans_huge_lock|pud_trans_huge_lock|compound_lock|local_irq_disable|local_irq_save)";
expression pages, I;
position g, p;
@@
gup@g(..., pages, ...)
... when != lk(...)
ref@p(\(pages[I]\|*pages\))

// The same when the call stores an allocated array through &pages.
@arr_alloc exists@
identifier gup =~ "^(__)?(get|pin)_user_pages(_fast|_fast_only|_locked|_unlocked|_remote|_longterm)?$|^get_kernel_pages?$|^iov_iter_get_pages(_alloc)?2?$|^iov_iter_extract_pages$";
identifier ref =~ "^(get_page|page_cache_get|get_page_foll|get_huge_page_tail)$";
identifier lk =~ "^(spin_lock|spin_trylock|raw_spin_lock|pte_offset_map_lock|pte_alloc_map_lock|get_locked_pte|pmd_lock|pud_lock|huge_pte_lock|pmd_trans_huge_lock|pud_trans_huge_lock|compound_lock|local_irq_disable|local_irq_save)";
expression pages, I;
position g, p;
@@
gup@g(..., &pages, ...)
... when != lk(...)
ref@p(\(pages[I]\|*pages\))

// One element of the array copied into a local, then referenced.
@arr_local exists@
identifier gup =~ "^(__)?(get|pin)_user_pages(_fast|_fast_only|_locked|_unlocked|_remote|_longterm)?$|^get_kernel_pages?$|^iov_iter_get_pages(_alloc)?2?$|^iov_iter_extract_pages$";
identifier ref =~ "^(get_page|page_cache_get|get_page_foll|get_huge_page_tail)$";
identifier lk =~ "^(spin_lock|spin_trylock|raw_spin_lock|pte_offset_map_lock|pte_alloc_map_lock|get_locked_pte|pmd_lock|pud_lock|huge_pte_lock|pmd_trans_huge_lock|pud_trans_huge_lock|compound_lock|local_irq_disable|local_irq_save)";
expression pages, I, E;
local idexpression struct page *page;
position g, p;
@@
gup@g(..., \(pages\|&pages\), ...)
... when != lk(...)
page = \(pages[I]\|*pages\)
... when != lk(...)
    when != page = E
ref@p(page)

// A single page: &page passed to an array call for one page, or returned by follow_page*.
@single exists@
identifier gup =~ "^(__)?(get|pin)_user_pages(_fast|_fast_only|_locked|_unlocked|_remote|_longterm)?$|^get_kernel_pages?$|^iov_iter_get_pages(_alloc)?2?$|^iov_iter_extract_pages$";
identifier one =~ "^(follow_page|follow_page_mask|follow_page_pte|follow_trans_huge_pmd|follow_huge_pmd|follow_devmap_pmd|get_dump_page|get_user_page_vma_remote)$";
identifier ref =~ "^(get_page|page_cache_get|get_page_foll|get_huge_page_tail)$";
identifier lk =~ "^(spin_lock|spin_trylock|raw_spin_lock|pte_offset_map_lock|pte_alloc_map_lock|get_locked_pte|pmd_lock|pud_lock|huge_pte_lock|pmd_trans_huge_lock|pud_trans_huge_lock|compound_lock|local_irq_disable|local_irq_save)";
expression page, E;
position g, p;
@@
(
gup@g(..., &page, ...)
|
page = one@g(...)
)
... when != lk(...)
    when != page = E
ref@p(page)

@script:python@
p << arr.p;
g << arr.g;
ref << arr.ref;
gup << arr.gup;
@@
print("%s:%s:%s: %s() on a page from %s() at line %s [tail-ref-race~spatch]"
      % (p[0].file, p[0].line, int(p[0].column) + 1, ref, gup, g[0].line))

@script:python@
p << arr_alloc.p;
g << arr_alloc.g;
ref << arr_alloc.ref;
gup << arr_alloc.gup;
@@
print("%s:%s:%s: %s() on a page from %s() at line %s [tail-ref-race~spatch]"
      % (p[0].file, p[0].line, int(p[0].column) + 1, ref, gup, g[0].line))

@script:python@
p << arr_local.p;
g << arr_local.g;
ref << arr_local.ref;
gup << arr_local.gup;
@@
print("%s:%s:%s: %s() on a page from %s() at line %s [tail-ref-race~spatch]"
      % (p[0].file, p[0].line, int(p[0].column) + 1, ref, gup, g[0].line))

@script:python@
p << single.p;
g << single.g;
ref << single.ref;
@@
print("%s:%s:%s: %s() on a page from a GUP call at line %s [tail-ref-race~spatch]"
      % (p[0].file, p[0].line, int(p[0].column) + 1, ref, g[0].line))
