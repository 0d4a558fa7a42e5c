#include "app/commands.hpp"

int main(int argc, char** argv) {
  return driftwatch::app::run_cli(argc, argv);
}
