// Consumer code with warnings on purpose: it builds only if jobwarden's own
// -Wall -Wextra -Wpedantic -Werror stay on jobwarden's targets, as they must.
#include <jobwarden/jobwarden.hpp>

static int ignores_its_parameter(int parameter) { return 0; }  // -Wunused-parameter
;                                                              // -Wpedantic: extra ';'

int main() {
  int unused_variable = 42;  // -Wunused-variable
  int index = -1;
  unsigned size = 3;
  bool signed_vs_unsigned = index < size;  // -Wsign-compare
  return ignores_its_parameter(signed_vs_unsigned ? 1 : 0);
}
