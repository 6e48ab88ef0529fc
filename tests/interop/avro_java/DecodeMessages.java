import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.MissingSchemaException;

/**
 * Decodes single-object-encoded records the way any Java consumer would: Lockgate's .avsc
 * files parsed by Apache Avro's own parser, one {@link BinaryMessageDecoder} per record
 * schema, nothing from Lockgate. Proves the wire format is the standard one.
 *
 * <p>Usage: {@code DecodeMessages SCHEMA_LIST MESSAGE...}. SCHEMA_LIST names the .avsc files,
 * one per line, in dependency order (named types before their use). For each message file
 * it prints one line {@code file<TAB>schema full name<TAB>record as Avro JSON}, or
 * {@code file<TAB>ERROR<TAB>exception} when no decoder accepts it. A bytes field that holds
 * another single-object-encoded record (an audit event's payload, an outcome's verdict) is
 * decoded too, as {@code file#field<TAB>...}. Exits 1 if anything failed.
 */
public final class DecodeMessages {
  private static final byte[] MARKER = {(byte) 0xC3, (byte) 0x01};

  private record Decoder(Schema schema, BinaryMessageDecoder<GenericRecord> decoder) {}

  private record Decoded(Schema schema, GenericRecord record) {}

  private DecodeMessages() {}

  public static void main(String[] args) throws IOException {
    Schema.Parser parser = new Schema.Parser();
    List<Decoder> decoders = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8)) {
      if (line.isBlank()) {
        continue;
      }
      Schema schema = parser.parse(new File(line.strip()));
      if (schema.getType() == Schema.Type.RECORD) {
        decoders.add(new Decoder(schema, new BinaryMessageDecoder<>(GenericData.get(), schema)));
      }
    }
    boolean failed = false;
    for (int i = 1; i < args.length; i++) {
      failed |= !print(decoders, args[i], Files.readAllBytes(Path.of(args[i])), true);
    }
    System.exit(failed ? 1 : 0);
  }

  /** Prints one message (and, if {@code nested}, the records its bytes fields carry); false on failure. */
  private static boolean print(List<Decoder> decoders, String label, byte[] message, boolean nested) {
    Decoded decoded;
    try {
      decoded = decode(decoders, message);
      System.out.println(label + "\t" + decoded.schema().getFullName() + "\t" + toJson(decoded));
    } catch (IOException | RuntimeException e) {
      System.out.println(label + "\tERROR\t" + e.getClass().getName() + ": " + e.getMessage());
      return false;
    }
    if (!nested) {
      return true;
    }
    boolean ok = true;
    for (Schema.Field field : decoded.schema().getFields()) {
      if (decoded.record().get(field.pos()) instanceof ByteBuffer buffer && startsWithMarker(buffer)) {
        byte[] inner = new byte[buffer.remaining()];
        buffer.duplicate().get(inner);
        ok &= print(decoders, label + "#" + field.name(), inner, false);
      }
    }
    return ok;
  }

  private static boolean startsWithMarker(ByteBuffer buffer) {
    return buffer.remaining() >= MARKER.length
        && buffer.get(buffer.position()) == MARKER[0]
        && buffer.get(buffer.position() + 1) == MARKER[1];
  }

  /** The decoder whose writer-schema fingerprint matches the header wins; none is an error. */
  private static Decoded decode(List<Decoder> decoders, byte[] message) throws IOException {
    MissingSchemaException missing = null;
    for (Decoder d : decoders) {
      try {
        return new Decoded(d.schema(), d.decoder().decode(message));
      } catch (MissingSchemaException e) {
        missing = e;
      }
    }
    throw missing != null ? missing : new IllegalStateException("no record schema given");
  }

  private static String toJson(Decoded decoded) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    JsonEncoder encoder = EncoderFactory.get().jsonEncoder(decoded.schema(), out);
    new GenericDatumWriter<GenericRecord>(decoded.schema()).write(decoded.record(), encoder);
    encoder.flush();
    return out.toString(StandardCharsets.UTF_8);
  }
}
