// A PLUS-style OpenIGTLink server built on the reference library: listens on PORT, accepts one
// client, sends N IMAGE messages ("Image_Reference", as PLUS names its B-mode stream) of W x H
// pixels at FPS, then closes. Pixel (x, y) of frame f is (3x + 5y + 7f) mod 256 (x257 for
// 16-bit; RGB: the value, +1 and +2 per channel), so the receiver can check every frame.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include "igtlImageMessage.h"
#include "igtlOSUtil.h"
#include "igtlServerSocket.h"

int main(int argc, char** argv) {
  if (argc < 7) { std::fprintf(stderr, "usage: send PORT N u8|u16|rgb W H FPS\n"); return 2; }
  int port = std::atoi(argv[1]), n = std::atoi(argv[2]), w = std::atoi(argv[4]), h = std::atoi(argv[5]);
  double fps = std::atof(argv[6]);
  std::string kind = argv[3];
  igtl::ServerSocket::Pointer server = igtl::ServerSocket::New();
  if (server->CreateServer(port) < 0) { std::fprintf(stderr, "cannot listen\n"); return 3; }
  std::printf("listening\n");
  std::fflush(stdout);
  igtl::Socket::Pointer sock;
  while (!sock) sock = server->WaitForConnection(1000);
  int comps = kind == "rgb" ? 3 : 1;
  int stype = kind == "u16" ? igtl::ImageMessage::TYPE_UINT16 : igtl::ImageMessage::TYPE_UINT8;
  for (int f = 0; f < n; ++f) {
    igtl::ImageMessage::Pointer img = igtl::ImageMessage::New();
    int size[3] = {w, h, 1};
    float spacing[3] = {0.2f, 0.25f, 1.0f};
    img->SetDimensions(size);
    img->SetSpacing(spacing);
    img->SetScalarType(stype);
    img->SetNumComponents(comps);
    img->SetDeviceName("Image_Reference");
    int origin[3] = {0, 0, 0};
    img->SetSubVolume(size, origin);
    img->AllocateScalars();
    unsigned char* p8 = static_cast<unsigned char*>(img->GetScalarPointer());
    unsigned short* p16 = static_cast<unsigned short*>(img->GetScalarPointer());
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        int v = (3 * x + 5 * y + 7 * f) % 256;
        for (int c = 0; c < comps; ++c) {
          int idx = (y * w + x) * comps + c;
          if (stype == igtl::ImageMessage::TYPE_UINT16) p16[idx] = static_cast<unsigned short>(v * 257);
          else p8[idx] = static_cast<unsigned char>((v + c) % 256);
        }
      }
    img->Pack();
    if (sock->Send(img->GetPackPointer(), img->GetPackSize()) == 0) { std::fprintf(stderr, "peer gone\n"); return 4; }
    igtl::Sleep(static_cast<int>(1000.0 / fps));
  }
  sock->CloseSocket();
  return 0;
}
