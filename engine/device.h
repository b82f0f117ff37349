// Where a tensor lives: the CPU or a CUDA device (real, or the emulator in the emulated build).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace se {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  // "cpu", "cuda", "cuda:1". Throws se::Error naming the text and the accepted forms.
  static Device parse(std::string_view text);

  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const;  // "cpu", "cuda:0"

  friend bool operator==(const Device& a, const Device& b) { return a.type == b.type && a.index == b.index; }
  friend std::ostream& operator<<(std::ostream& out, const Device& d) { return out << d.str(); }
};

// True when this build has CUDA (real or emulated) and at least one device answers.
bool cuda_available();
int cuda_device_count();
// cuda:0 when available, else the CPU.
Device best_device();
// Throws se::Error when `device` does not exist in this build/machine; `op` names the caller.
void check_device(const Device& device, std::string_view op);

}  // namespace se
