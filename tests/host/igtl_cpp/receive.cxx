// A small OpenIGTLink client built on the reference library (libopenigtlink): connects to
// HOST:PORT, receives messages until it has N frames (IMAGE "qdev-frame" + IMAGE "qdev-mask"),
// checks each body's CRC through the library (Unpack(1)), and writes, per frame, one line
//   <device> <i> <j> <k> <components> <scalar type> <spacing i> <spacing j> <pixel bytes as hex>
// to stdout (mask) or a checksum line (frame), so the test can compare with the session's masks.
// (libopenigtlink 1.11: Socket::Receive(data, length, readFully = 1) reads the whole length.)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include "igtlClientSocket.h"
#include "igtlImageMessage.h"
#include "igtlMessageHeader.h"
#include "igtlOSUtil.h"
#include "igtlStringMessage.h"

int main(int argc, char** argv) {
  if (argc < 4) { std::fprintf(stderr, "usage: receive HOST PORT N [quiet]\n"); return 2; }
  int n = std::atoi(argv[3]);
  bool quiet = argc > 4 && std::string(argv[4]) == "quiet";  // a consumer's cost only: CRC, no printing
  igtl::ClientSocket::Pointer sock = igtl::ClientSocket::New();
  int tries = 0;  // the server may not listen yet: retry for up to 30 s
  while (sock->ConnectToServer(argv[1], std::atoi(argv[2])) != 0) {
    if (++tries > 600) { std::fprintf(stderr, "cannot connect\n"); return 3; }
    igtl::Sleep(50);
  }
  std::printf("connected\n");
  std::fflush(stdout);
  int masks = 0, frames = 0, strings = 0;
  igtl::MessageHeader::Pointer head = igtl::MessageHeader::New();
  while (masks < n || frames < n || strings < n) {
    head->InitPack();
    igtlUint64 r = sock->Receive(head->GetPackPointer(), head->GetPackSize());
    if (r != head->GetPackSize()) { std::fprintf(stderr, "header cut after %d masks\n", masks); return 4; }
    head->Unpack();
    std::string type = head->GetDeviceType();
    if (type == "IMAGE") {
      igtl::ImageMessage::Pointer img = igtl::ImageMessage::New();
      img->SetMessageHeader(head);
      img->AllocatePack();
      if (sock->Receive(img->GetPackBodyPointer(), img->GetPackBodySize()) != (int)img->GetPackBodySize()) { std::fprintf(stderr, "body cut\n"); return 6; }
      int c = img->Unpack(1);
      if (!(c & igtl::MessageHeader::UNPACK_BODY)) { std::fprintf(stderr, "CRC or body error\n"); return 5; }
      int i, j, k; img->GetDimensions(i, j, k);
      float si, sj, sk; img->GetSpacing(si, sj, sk);
      std::string dev = head->GetDeviceName();
      if (quiet) {
        if (dev == "qdev-mask") ++masks; else ++frames;
        continue;
      }
      const unsigned char* px = static_cast<const unsigned char*>(img->GetScalarPointer());
      int bytes = img->GetImageSize();
      std::printf("%s %d %d %d %d %d %.4f %.4f ", dev.c_str(), i, j, k, img->GetNumComponents(),
                  img->GetScalarType(), si, sj);
      if (dev == "qdev-mask") {
        for (int b = 0; b < bytes; ++b) std::printf("%02x", px[b]);
        ++masks;
      } else {
        unsigned long long sum = 0;
        for (int b = 0; b < bytes; ++b) sum = sum * 131 + px[b];
        std::printf("%llu", sum);
        ++frames;
      }
      std::printf("\n");
    } else if (type == "STRING") {
      igtl::StringMessage::Pointer s = igtl::StringMessage::New();
      s->SetMessageHeader(head);
      s->AllocatePack();
      if (sock->Receive(s->GetPackBodyPointer(), s->GetPackBodySize()) != (int)s->GetPackBodySize()) { std::fprintf(stderr, "body cut\n"); return 6; }
      s->Unpack(1);
      if (!quiet) std::printf("STRING %s\n", s->GetString());
      ++strings;
    } else {
      sock->Skip(head->GetBodySizeToRead(), 0);
    }
  }
  if (quiet) std::printf("%d frames %d masks %d strings\n", frames, masks, strings);
  std::fflush(stdout);
  sock->CloseSocket();
  return 0;
}
